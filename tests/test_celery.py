import pytest
from celery.contrib.testing.worker import start_worker

from dashboard.celery import app, ping


@pytest.mark.integration
@pytest.mark.django_db
def test_a_real_worker_on_the_test_broker_completes_a_task():
    app.conf.task_always_eager = False
    with start_worker(app, perform_ping_check=False, pool="solo", loglevel="WARNING"):
        result = ping.delay("hello")
        assert result.get(timeout=20) == {"pong": "hello"}


def test_celery_speaks_json_only_and_bounds_task_time():
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_soft_time_limit < app.conf.task_time_limit


def test_the_apps_tasks_are_the_projects_and_wait_for_the_commit():
    """The apps declare shared tasks (nothing below the project imports its Celery app); they
    bind to the project's app, whose Django task class queues after the transaction commits."""
    from batches import tasks

    for task in (tasks.submit_submission, tasks.check_submission, tasks.run_batch_action):
        assert task.app is app and hasattr(task, "delay_on_commit")
