"""An experiment of one's own for grokjax: a task and a model, outside grokjax (docs/extending.md)."""
