"""`python -m projector [run|rebuild]`: see `projector.app`."""

from projector.app import main

if __name__ == "__main__":
    main()
