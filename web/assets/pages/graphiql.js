(function () {
  var loc = window.location;
  var wsUrl = (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host + '/graphql/ws';
  var token = null;
  try { token = window.localStorage.getItem('iocloud.access_token'); } catch (e) { /* storage disabled */ }
  var auth = token ? { Authorization: 'Bearer ' + token } : {};
  var headers = JSON.stringify({ Authorization: 'Bearer ' + (token || '<token>') }, null, 2);
  // HTTP for queries/mutations; graphql-ws ("graphql-transport-ws") for subscriptions.
  // The headers editor's JSON is sent as HTTP headers and as the WebSocket connection_init payload,
  // over the stored token below (GraphiQL's first schema fetch runs before the editor exists).
  var fetcher = GraphiQL.createFetcher({
    url: '/graphql', subscriptionUrl: wsUrl, headers: auth, wsConnectionParams: auth
  });
  function render(examples) {
    ReactDOM.createRoot(document.getElementById('graphiql')).render(
      React.createElement(GraphiQL, {
        fetcher: fetcher,
        defaultQuery: examples,
        defaultHeaders: headers,
        isHeadersEditorEnabled: true,
        defaultEditorToolsVisibility: 'headers'
      })
    );
  }
  // Example operations of this API (and how to authenticate) in the first tab; GraphiQL keeps
  // what a user edits in its own storage after that.
  fetch('/assets/pages/graphiql-examples.graphql')
    .then(function (r) { return r.ok ? r.text() : undefined; })
    .then(render, function () { render(undefined); });
})();
