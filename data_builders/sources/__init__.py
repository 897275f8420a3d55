"""One module per dataset source. Every module here is imported by
``data_builders.framework.discover_sources`` (pkgutil), so a new dataset is a new file
with a ``@register_source("name")`` class and never touches the framework. Modules whose
name starts with an underscore or that register nothing (shared helpers) are fine too."""
