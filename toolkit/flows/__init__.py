"""What each command does, below the terminal: a `cli/` module parses its options, calls one function
here and prints what it returns."""
