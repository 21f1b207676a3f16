//! A GraphQL WebSocket client (graphql-transport-ws) for the suites that subscribe or send
//! operations over the socket: connect and be acknowledged, send an operation, read its answer
//! and its error code.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::TestApp;

/// A client's end of the GraphQL WebSocket.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A GraphQL WebSocket (graphql-transport-ws) acknowledged for the holder of `access`.
pub async fn connect(app: &TestApp, access: &str) -> Socket {
    let mut req = format!("ws://{}/graphql/ws", app.server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket connects");
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {access}")}});
    ws.send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws
}

/// Sends one operation (graphql-transport-ws `subscribe`) with id `id`.
pub async fn send_op(ws: &mut Socket, id: &str, query: &str) {
    let msg = json!({"id": id, "type": "subscribe", "payload": {"query": query}});
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
}

/// Reads until operation `id` answers (`next`), passing over other messages.
pub async fn answer_to(ws: &mut Socket, id: &str) -> Value {
    loop {
        let msg = next_json(ws).await;
        if msg["type"] == "next" && msg["id"] == id {
            return msg;
        }
    }
}

/// The `code` of an answer's first error, or "" when it has none.
pub fn error_code(msg: &Value) -> String {
    msg["payload"]["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The next JSON message, passing over pings and pongs; at most ten seconds away.
pub async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = std::time::Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout(deadline, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] != "ping" && v["type"] != "pong" {
                return v;
            }
        }
    }
}
