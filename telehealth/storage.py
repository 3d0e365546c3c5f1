"""Static files in production: hashed names (cache-busting) and compressed copies."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """Also rewrites ES-module ``import … from "./realtime.js"`` to the hashed name.

    Without it, pages load their own module under a hashed name but the shared
    modules it imports under their plain names, which browsers cache across
    deploys: a page's new code would run against yesterday's realtime.js.
    """

    support_js_module_import_aggregation = True
