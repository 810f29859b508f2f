"""pot_torch's loggers: POT's logger class for pot_torch's names, Python's own for everyone else's."""
from __future__ import annotations

import logging
import threading

from pot_torch.utils.logger import RegularLogger, get_logger


def test_other_threads_get_pythons_logger_class_while_pot_torch_creates_loggers():
    """get_logger once swapped the manager's logger class for a moment: a library creating its logger in another
    thread at that moment got a RegularLogger."""
    stop = threading.Event()

    def create_pot_torch_loggers() -> None:
        count = 0
        while not stop.is_set():
            get_logger(f"race_check.{count}")
            count += 1

    creator = threading.Thread(target=create_pot_torch_loggers)
    creator.start()
    try:
        others = [logging.getLogger(f"some_library.race_check.{index}") for index in range(20000)]
    finally:
        stop.set()
        creator.join()
    assert [type(logger) for logger in others if type(logger) is not logging.Logger] == []
    assert isinstance(get_logger("race_check.mine"), RegularLogger)
