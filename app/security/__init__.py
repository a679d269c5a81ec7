"""Who is calling: keys, the request context, and the decorators that demand a credential."""
