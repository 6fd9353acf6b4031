"""One module per page: each returns the JSON (or event stream) its page renders."""
