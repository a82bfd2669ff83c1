"""Neural towers, layers and the TFRS models built from them."""
