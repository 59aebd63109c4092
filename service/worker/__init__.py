"""The worker: Celery consumes a job id (`tasks`), the runner claims the job's lease and
calls its kind's handler (`kinds`, `handlers/`), and the sweeper sends again what was lost.
Handlers call `curation` and `training` and record results through `service.store`."""
