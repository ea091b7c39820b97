"""The README's pictures, drawn from real footage through the CLI."""
