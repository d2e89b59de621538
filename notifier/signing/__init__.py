"""DKIM: the key store and the signer. Private keys never leave this package."""
