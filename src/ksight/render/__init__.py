"""Views of the model: text for people, JSON for machines. Models never import renderers."""
