"""Work a view starts (a control moved, a click, a button): a package error becomes a line of text.

Failure policy of the explorer's state: an operation raises only package errors
(:class:`~wcembed.core.errors.WcEmbedError`); "nothing there" (no chip under a click, no query yet) is not an
error but a status line and a ``None`` result. A view runs an operation through :func:`attempt`, which says
a package error where the view shows it, and never lets an exception into the widget machinery.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from wcembed.core.errors import WcEmbedError, one_line

log = logging.getLogger(__name__)


def attempt(say: Callable[[str], None], operation: Callable[..., Any], *args, **kwargs) -> Any:
    """Run ``operation(*args, **kwargs)``: a package error is said with ``say`` (and None returned); anything
    else is a bug, logged with its traceback and said too. Either way the error's frames are released at once,
    so a failed whole-region layer does not keep its arrays alive."""
    try:
        return operation(*args, **kwargs)
    except WcEmbedError as exc:
        say(one_line(exc))
        release_frames(exc)
    except Exception as exc:  # a bug; a callback must not raise into the widget machinery
        trace = "".join(traceback.format_exception(exc))  # text: a log record keeps no frame alive
        log.error("unexpected error in %s\n%s", getattr(operation, "__name__", operation), trace)
        say(one_line(f"unexpected error (please report it): {type(exc).__name__}: {exc}"))
        release_frames(exc)
    return None


def release_frames(exc: BaseException) -> None:
    """Clear the variables of the finished frames an error, and the errors it was raised from, hold: a
    library may keep an error after it was handled (LanceDB's event loop thread holds the error of a failed
    read until it next runs), and with its frames it would keep the failed layer's arrays."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)  # the frame still running (attempt's) is left as it is
        todo += [e.__cause__, e.__context__]
