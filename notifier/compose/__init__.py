"""Making a message: validate → sender decision → render → links → MIME → prepared."""
