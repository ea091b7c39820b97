"""mgm: motion-guided masking for video masked autoencoders.

Data flow (one direction): codec -> motion -> masking -> data -> model -> engine -> cli.
Importing the package is cheap: heavy modules (torch, av) load only where they are used.
"""

__version__ = "0.1.0"
