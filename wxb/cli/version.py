"""`wxb version`."""

import wxb


def version() -> None:
    """Print the installed wxb version.

    Example: wxb version
    """
    print(f"wxb {wxb.__version__}")
