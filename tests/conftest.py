"""Set-up shared by the unit tests."""

import signal

# A shell that starts a job in the background (`nox -s tests &`) starts it with SIGINT ignored, and a process started
# so, Python included, keeps ignoring it: the Ctrl-C tests would then see no KeyboardInterrupt in the processes they
# spawn. A handler installed here is reset to the default at exec, so every child gets Python's usual Ctrl-C.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
