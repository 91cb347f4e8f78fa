"""``python -m meter.cli_entry``: the console script, runnable without the installed shim."""

from meter.cli import main

if __name__ == "__main__":
    main()
