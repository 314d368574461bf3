"""Run `python -m scripts.sample_data --output ... --rows ...`."""

from scripts.sample_data import main

if __name__ == "__main__":
    main()
