"""`python -m projector [run|rebuild]`: see `projector.cli`."""

from projector.cli import main

if __name__ == "__main__":
    main()
