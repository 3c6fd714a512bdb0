"""One policy per file; each is an async ``(request, next) -> response`` callable."""
