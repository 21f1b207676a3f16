(function () {
  // System fonts only: Redoc's defaults name Roboto/Montserrat, which we do not ship or fetch.
  var sans = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif';
  var mono = 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", "DejaVu Sans Mono", monospace';
  Redoc.init('/openapi.json', {
    hideDownloadButton: false,
    theme: {
      typography: {
        fontFamily: sans,
        headings: { fontFamily: sans },
        code: { fontFamily: mono }
      }
    }
  }, document.getElementById('redoc'));
})();
