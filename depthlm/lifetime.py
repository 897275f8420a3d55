"""Child processes that die with their parent, even when the parent is SIGKILLed.

vLLM runs its engine in child processes (``VLLM::EngineCore``, which starts ``VLLM::Worker``).
A parent that is killed runs no clean-up, so those children would keep the model's memory
(2.6 GB on the tiny CPU run, a GPU's worth on a real one) for minutes. Linux's
``PR_SET_PDEATHSIG`` makes the kernel send SIGKILL to a child when its parent dies; it must be
set in the child:

- forked children (vLLM on GPUs by default): an ``os.register_at_fork`` hook;
- spawned children (vLLM on CPUs, or wherever CUDA was initialised first): a spawned child
  re-imports the parent's main module, hence ``depthlm``, whose ``__init__`` calls
  :func:`adopt_if_spawned` when the parent asked for it (``DEPTHLM_DIE_WITH_PARENT=<its pid>``).

SIGTERM and Ctrl-C are handled above this, by closing the backend (``stop_on_sigterm``).
Elsewhere than Linux these are no-ops.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

ENV = "DEPTHLM_DIE_WITH_PARENT"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_hooked = False


def set_pdeathsig(parent: int | None = None) -> None:
    """In a child: get SIGKILL when the parent dies. Exits at once if `parent` is already gone."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:  # died before the prctl took effect
        os._exit(1)


def die_with_parent() -> None:
    """From now on, every child this process forks or spawns (and theirs) dies with its parent."""
    global _hooked
    os.environ[ENV] = str(os.getpid())  # children spawned from here know who they belong to
    if _hooked or not sys.platform.startswith("linux"):
        return
    parent = {"pid": os.getpid()}

    def before() -> None:
        parent["pid"] = os.getpid()

    os.register_at_fork(before=before, after_in_child=lambda: set_pdeathsig(parent["pid"]))
    _hooked = True


def adopt_if_spawned() -> None:
    """Called when ``depthlm`` is imported: in a multiprocessing spawn child of a process that
    called :func:`die_with_parent`, tie this process to its parent."""
    asked = os.environ.get(ENV, "")
    if not asked.isdigit():
        return
    process = sys.modules.get("multiprocessing.process")
    # A spawn child imports the parent's main module while it "inherits" (multiprocessing's own
    # test for that, spawn._check_not_importing_main); a plain `import depthlm` never does.
    if process is None or not getattr(process.current_process(), "_inheriting", False):
        return
    owner = int(asked)
    if os.getppid() == owner:
        set_pdeathsig(owner)
        die_with_parent()  # and its own children (vLLM workers) to it
    elif not _exists(owner):  # the process that started us died before we could tie ourselves to it
        os._exit(1)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
