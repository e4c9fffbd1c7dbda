"""What `batches/` and `emulator/` stand on, apart from the Django project (`dashboard/`):
settings read from the environment (`env`), error reports that never show a key (`errors`),
file storage on local disk or S3 with ranged streaming (`storage`, `local_files`,
`object_storage`), the API's published schemas and known betas (`schemas`, `betas`), and the
guard that keeps slow clients from holding the web process (`slow_clients`). Nothing here
imports a model, an app or the project."""
