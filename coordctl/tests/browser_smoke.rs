//! The browser harness (`support::browser`) on its own, against a page this
//! test serves itself: headless Chromium starts, a click runs the page's
//! script, `wait_for_text` sees a change that comes 200 ms later, a
//! screenshot is a PNG file, and a text that never comes fails with the last
//! text seen and a screenshot. What the dashboard tests stand on.
//!
//! Waiting polls for the condition; the deadline only turns a hang into a
//! failure.

mod support;

use std::{path::Path, time::Duration};

use support::browser::{Browser, screenshot_dir};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Only a hang guard: the change comes 200 ms after the click.
const HANG: Duration = Duration::from_secs(10);

/// A name typed into the input shows, 200 ms after the button is clicked
/// (a `setTimeout`), as "hello, <name>".
const PAGE: &str = r#"<!doctype html>
<html>
<head><meta charset="utf-8"><title>coord browser smoke</title></head>
<body>
<h1>coord browser smoke</h1>
<input id="name" value="">
<button id="go">Greet</button>
<p id="status">idle</p>
<script>
document.getElementById("go").addEventListener("click", () => {
  const name = document.getElementById("name").value;
  setTimeout(() => {
    document.getElementById("status").textContent = "hello, " + name;
  }, 200);
});
</script>
</body>
</html>
"#;

/// Serves [`PAGE`] at `/` (404 elsewhere) on a free loopback port until the
/// test's runtime ends; returns the page's URL.
async fn serve_page() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream));
        }
    });
    format!("http://{addr}/")
}

/// Reads one request's head and answers it, closing the connection.
async fn answer(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let (status, body) = if head.starts_with(b"GET / ") {
        ("200 OK", PAGE)
    } else {
        ("404 Not Found", "not found")
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
}

#[tokio::test]
async fn a_click_changes_the_text_later_and_wait_for_text_sees_it() {
    let url = serve_page().await;
    let browser = Browser::start().await;
    browser.goto(&url).await;
    assert!(browser.exists("#go").await);
    assert!(!browser.exists("#no-such-element").await);
    assert_eq!(browser.text("h1").await, "coord browser smoke");

    browser.fill("#name", "coord").await;
    browser.click("#go").await;
    let text = browser.wait_for_text("#status", "hello, coord", HANG).await;
    assert_eq!(text, "hello, coord");
    // A predicate instead of a substring.
    let text = browser
        .wait_for_text("#status", |t: &str| t.ends_with(", coord"), HANG)
        .await;
    assert_eq!(text, "hello, coord");

    let shot = browser.screenshot("browser-smoke").await;
    assert_eq!(shot, screenshot_dir().join("browser-smoke.png"));
    assert_png(&shot);
    browser.close().await;
}

#[tokio::test]
async fn a_text_that_never_comes_fails_with_the_last_text_seen_and_a_screenshot() {
    let url = serve_page().await;
    let browser = Browser::start().await;
    browser.goto(&url).await;
    // The browser panics inside a task, so the panic can be examined here
    // (and the browser is dropped while unwinding, as in a failing test).
    let waited = tokio::spawn(async move {
        browser
            .wait_for_text("#status", "never shown", Duration::from_millis(300))
            .await
    })
    .await;
    let panic = waited.expect_err("wait_for_text gave up").into_panic();
    let message = panic
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(
        message.contains("a text containing \"never shown\"; last seen: \"idle\""),
        "{message}"
    );
    let shot = screenshot_dir()
        .join("a_text_that_never_comes_fails_with_the_last_text_seen_and_a_screenshot-timeout.png");
    assert!(
        message.contains(&format!("(screenshot: {})", shot.display())),
        "{message}"
    );
    assert_png(&shot);
}
