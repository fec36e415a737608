//! Noticing a client that leaves a stream while bff is waiting on the model.
//!
//! actix-web learns that a client went away only when a write to it fails, and the first write
//! after the client left still succeeds (actix/actix-web#1313). With a model that pauses
//! (reasoning, tool calls) the upstream call, and its billing, would go on until the second chunk
//! after the pause. So each TCP connection's socket is duplicated when it opens
//! ([`on_connect`]), and a stream registers that duplicate with the runtime ([`ClientWatch`]) to be
//! woken as soon as the peer closes its side (FIN or reset), whether or not bff is writing.

use actix_web::HttpRequest;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use std::any::Any;
use std::os::fd::{AsFd, OwnedFd};
use std::task::{Context, Poll};
use tokio::io::ReadBuf;

/// A duplicate of the connection's socket, kept in the connection's data.
struct ClientSocket(OwnedFd);

/// `HttpServer::on_connect` hook: keeps a duplicate of each TCP connection's socket.
pub fn on_connect(connection: &dyn Any, data: &mut Extensions) {
    if let Some(tcp) = connection.downcast_ref::<TcpStream>()
        && let Ok(socket) = tcp.as_fd().try_clone_to_owned()
    {
        data.insert(ClientSocket(socket));
    }
}

/// Wakes a stream when its client closes the connection.
pub struct ClientWatch(TcpStream);

/// What [`ClientWatch::poll`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// The client closed its side of the connection (FIN or reset).
    Gone,
    /// The watch cannot tell any more (bytes of a pipelined request wait in the socket, which
    /// are the dispatcher's, or the socket failed); a failed write still ends the stream.
    Unknown,
}

impl ClientWatch {
    /// Watches the connection `request` came on; `None` when it cannot be watched (not TCP, or
    /// out of descriptors): the stream then learns of a disconnect from a failed write, as before.
    pub fn of(request: &HttpRequest) -> Option<Self> {
        let socket = request.conn_data::<ClientSocket>()?.0.try_clone().ok()?;
        TcpStream::from_std(std::net::TcpStream::from(socket))
            .ok()
            .map(Self)
    }

    /// `Pending` while the client is connected and nothing else arrived; peeks, never reads.
    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<Client> {
        let mut byte = [0_u8; 1];
        let mut peeked = ReadBuf::new(&mut byte);
        match self.0.poll_peek(cx, &mut peeked) {
            Poll::Ready(Ok(0)) => Poll::Ready(Client::Gone),
            Poll::Ready(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                Poll::Ready(Client::Gone)
            }
            Poll::Ready(_) => Poll::Ready(Client::Unknown),
            Poll::Pending => Poll::Pending,
        }
    }
}
