"""The domain layer: what a request or a job may do to the stored rows.

Routes (`service.api.routes`) and job handlers (`service.worker.handlers`) call these
functions; they never call each other. Each module holds one resource: loading its rows by
project (a row of another project is "not found"), the checks a create must pass (raised as
`service.problems.Problem`, which the API turns into its HTTP answer), and starting the jobs
that do the work (`service.store.jobs`). Nothing here imports `service.api` or
`service.worker`.
"""
