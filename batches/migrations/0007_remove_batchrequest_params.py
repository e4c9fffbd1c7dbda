from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("batches", "0006_requests_into_bodies")]

    operations = [
        migrations.RemoveField(model_name="batchrequest", name="params"),
    ]
