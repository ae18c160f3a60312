# Exits right away without a single query.
pass
