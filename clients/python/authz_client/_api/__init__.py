"""AuthorizationService's generated modules, the client's own copy (`make proto` writes them)."""
