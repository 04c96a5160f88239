"""Task embedding-toy: twelve sentiment words as points in two dimensions."""
