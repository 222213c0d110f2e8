"""One module per Xero resource the emulator keeps; ``common`` holds what they share."""
