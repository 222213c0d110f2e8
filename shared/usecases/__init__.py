"""The connector's work. Each use case takes its adapters as arguments."""
