"""Login methods, one flow a file, in the Authlib grant vocabulary."""
