//! Raw HTTP/1.1 over TCP, for tests that must control or see the bytes on the wire (partial heads, `Expect`,
//! chunked framing, trailers, connection closes) where a client library would hide them.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long any single read helper waits before it gives up (a test failure, not a hang).
const READ_LIMIT: Duration = Duration::from_secs(5);

/// A response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// The head exactly as received (status line and header lines, without the blank line).
    pub head: String,
    /// Header fields in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body, names lowercased.
    pub trailers: Vec<(String, String)>,
    /// Whether the body was sent with chunked framing.
    pub chunked: bool,
}

impl RawResponse {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The first value of trailer `name`.
    pub fn trailer(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.trailers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (panics with the body text if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A raw TCP connection speaking HTTP/1.1 by hand.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        Self { stream, buf: Vec::new() }
    }

    /// Writes `bytes`; panics if the connection is broken.
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.try_send(bytes).await.unwrap_or_else(|e| panic!("write failed: {e}"));
    }

    /// Writes `bytes`.
    pub async fn try_send(&mut self, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
        self.stream.write_all(bytes.as_ref()).await?;
        self.stream.flush().await
    }

    /// Reads one response (a `1xx` interim response counts as one); panics if none arrives within 5 s or the
    /// connection closes first.
    pub async fn read_response(&mut self) -> RawResponse {
        self.try_read_response(false)
            .await
            .unwrap_or_else(|e| panic!("no response: {e}; got so far: {:?}", self.text()))
    }

    /// Reads the response to a `HEAD` request (a head without a body).
    pub async fn read_head_response(&mut self) -> RawResponse {
        self.try_read_response(true).await.unwrap_or_else(|e| panic!("no response: {e}; got so far: {:?}", self.text()))
    }

    /// Reads one response; `head_request` says the request was `HEAD` (so no body follows).
    pub async fn try_read_response(&mut self, head_request: bool) -> std::io::Result<RawResponse> {
        let deadline = Instant::now() + READ_LIMIT;
        let end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end;
            }
            self.fill(deadline).await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut resp = RawResponse { status, head, headers, body: Vec::new(), trailers: Vec::new(), chunked: false };
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(resp);
        }
        let chunked = resp.header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().ends_with("chunked"));
        if chunked {
            resp.chunked = true;
            self.read_chunked(&mut resp, deadline).await?;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().map_err(|_| invalid(format!("bad content-length {len:?}")))?;
            while self.buf.len() < len {
                self.fill(deadline).await?;
            }
            resp.body = self.buf.drain(..len).collect();
        } else {
            // Close-delimited.
            loop {
                match self.fill(deadline).await {
                    Ok(()) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    async fn read_chunked(&mut self, resp: &mut RawResponse, deadline: Instant) -> std::io::Result<()> {
        loop {
            let line = self.read_line(deadline).await?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                loop {
                    let line = self.read_line(deadline).await?;
                    if line.is_empty() {
                        return Ok(());
                    }
                    if let Some((n, v)) = line.split_once(':') {
                        resp.trailers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                }
            }
            while self.buf.len() < size + 2 {
                self.fill(deadline).await?;
            }
            resp.body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    async fn read_line(&mut self, deadline: Instant) -> std::io::Result<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            self.fill(deadline).await?;
        }
    }

    /// Reads more bytes into the buffer; `UnexpectedEof` when the peer closed, `TimedOut` at `deadline`.
    async fn fill(&mut self, deadline: Instant) -> std::io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed")),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out")),
        }
    }

    /// Waits until the peer closes the connection (end of stream or a reset), reading whatever it sends meanwhile.
    /// Returns every byte received (including unread buffered ones), or `None` if it was still open after
    /// `within`.
    pub async fn read_until_closed(&mut self, within: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + within;
        loop {
            match self.fill(deadline).await {
                Ok(()) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return None,
                Err(_) => return Some(std::mem::take(&mut self.buf)),
            }
        }
    }

    /// Whether the peer has sent nothing and not closed within `wait` (bytes that do arrive stay buffered).
    pub async fn is_quiet_for(&mut self, wait: Duration) -> bool {
        let before = self.buf.len();
        match self.fill(Instant::now() + wait).await {
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => self.buf.len() == before,
            _ => false,
        }
    }

    /// Bytes received but not yet consumed by a read helper, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// The underlying stream (to split it or write from another task).
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}
