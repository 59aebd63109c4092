"""kombu's filesystem transport, with messages that appear whole.

The stock transport (kombu 5.x, `kombu/transport/filesystem.py`) creates a message file
under its final name and then writes it; a consumer polling the folder can move and read
it before the write lands, gets an empty payload, fails on `json.loads` and the message
is lost (celery/kombu#1551, open). The embedded worker then never sees the job, which
stays queued until the sweeper sends it again. Here a message is written under a name the
consumer skips (`.msg.tmp`: it takes only names ending in `<queue>.msg`) and renamed into
place, so a consumer sees a whole message or none.

Importing this module makes `filesystem://` mean this transport in the process (kombu's
alias table); service.celery_app imports it, so the API and every worker use it.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Put `payload` onto `queue`: written beside its final name, then renamed."""
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        path = os.path.join(self.data_folder_out, name)
        temp = path + ".tmp"
        try:
            with open(temp, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(temp, path)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {path!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES["filesystem"] = f"{__name__}:Transport"
