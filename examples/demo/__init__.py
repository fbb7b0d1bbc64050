"""The demo: Embedding Studio improving a real search engine on public data, run over the public client.

``python -m examples.demo`` from the repository root (``make demo``). It is an example, not part of the installed
package: nothing in ``embedding_studio`` imports it, and its data (``data/``) stays in the repository.
"""
