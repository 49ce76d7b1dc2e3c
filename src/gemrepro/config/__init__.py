"""What a scale is (``tiny``, ``small``, ``paper``): sizes every study reads. Imports nothing of gemrepro."""
