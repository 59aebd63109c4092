"""The job handlers, one module per kind; `KINDS` lists them for the runner."""

from service.worker.handlers import mixture, scan, sleep, study, verification
from service.worker.kinds import JobKind

KINDS: dict[str, JobKind] = {
    module.KIND.name: module.KIND for module in (sleep, scan, mixture, verification, study)
}
