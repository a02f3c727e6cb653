"""Suite-wide: the tests that share what a pytest-xdist worker starts once run on one worker.

`make test` runs the suite on two workers (`-n 2 --dist loadgroup`), and each worker builds its
own session fixtures. The end-to-end tests share one broker and one kinesalite, and time the
function against its deadlines; the rehearsal shares one synth of the stack (half a minute) and
one moto server. Each of these folders is one unit of work: it runs on one worker, a test after
another, while the other worker takes the rest a test at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import pytest

if TYPE_CHECKING:
    from xdist.remote import Producer
    from xdist.scheduler import LoadGroupScheduling

# Folders whose tests are one unit of work each.
TOGETHER: Final = ("tests/e2e/", "tests/rehearse/")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> LoadGroupScheduling | None:
    """`--dist loadgroup`, with each folder of TOGETHER as a group. (Groups by `xdist_group`
    marks alone are lost with pytest 9, where the node id xdist renames is no longer read.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class FoldersTogether(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            folder = next((f for f in TOGETHER if nodeid.startswith(f)), None)
            return folder if folder is not None else super()._split_scope(nodeid)

    return FoldersTogether(config, log)
