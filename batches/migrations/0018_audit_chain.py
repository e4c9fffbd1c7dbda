# The audit log's hash chain (batches/audit_chain.py): each entry holds the previous entry's hash
# and its own. The entries written before are chained here, in id order.

import django.utils.timezone
from django.db import migrations, models

TABLE = 'batches_auditentry'
TRIGGER = 'batches_auditentry_append_only'  # migration 0010's


def chain_existing(apps, schema_editor):
    """Chains the entries there are, a thousand at a time. On PostgreSQL the append-only trigger
    is off meanwhile, in this transaction only (the migration runs as the table's owner)."""
    from batches.audit_chain import GENESIS, content_hash

    AuditEntry = apps.get_model('batches', 'AuditEntry')
    entries = AuditEntry.objects.using(schema_editor.connection.alias).order_by('id')
    postgresql = schema_editor.connection.vendor == 'postgresql'
    if postgresql:
        schema_editor.execute(f'ALTER TABLE {TABLE} DISABLE TRIGGER {TRIGGER}')
    prev_hash, last_id = GENESIS, 0
    while page := list(entries.filter(id__gt=last_id)[:1000]):
        for entry in page:
            entry.prev_hash = prev_hash
            entry.hash = prev_hash = content_hash(entry)
        entries.bulk_update(page, ['prev_hash', 'hash'])
        last_id = page[-1].id
    if postgresql:
        schema_editor.execute(f'ALTER TABLE {TABLE} ENABLE TRIGGER {TRIGGER}')


class Migration(migrations.Migration):

    dependencies = [
        ('batches', '0017_try_first'),
    ]

    operations = [
        migrations.AddField(
            model_name='auditentry',
            name='hash',
            field=models.CharField(default='', editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name='auditentry',
            name='prev_hash',
            field=models.CharField(default='', editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name='auditentry',
            name='at',
            field=models.DateTimeField(
                db_index=True, default=django.utils.timezone.now, editable=False
            ),
        ),
        migrations.RunPython(chain_existing, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='auditentry',
            constraint=models.UniqueConstraint(fields=('prev_hash',), name='audit_chain_no_fork'),
        ),
    ]
