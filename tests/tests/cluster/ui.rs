//! The web UI in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`, through `fantoccini`) against a 3-replica cluster.
//!
//! A person signs in with the admin token, adds an origin (and gets the agent's install
//! command), adds a route (and sees the A records to create), sees both listed on another
//! replica with the same cookie, deletes them, and signs out. Plain HTTP requests check what a
//! browser cannot show: a form POST without (or with a wrong) CSRF token is refused with 403,
//! the cookie's attributes, a CSRF token from one replica works on another, and revoking the
//! admin token ends its sessions. A screenshot of the dashboard is saved under the cluster's
//! temporary directory and copied to `/tmp/kokoa-ui-screenshot.png`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use kokoa_tests::{free_port, wait_until_ok, Cluster, CONVERGE_TIMEOUT, REQUEST_TIMEOUT};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{json, Value};

use crate::common::{items, route_hostnames};
use crate::fleet::new_edge;

/// Where a copy of the dashboard screenshot goes, to look at after the run.
const SCREENSHOT_COPY: &str = "/tmp/kokoa-ui-screenshot.png";
/// How long the browser may take to show what an action should lead to.
const UI_TIMEOUT: Duration = CONVERGE_TIMEOUT;

/// Finds an executable on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// A `chromedriver` child in its own process group; dropping it kills the whole group (the
/// driver and any browser it started), also when the test panics.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    /// Starts `chromedriver` on a free loopback port and waits until it says it is ready.
    async fn start(log: &Path) -> Chromedriver {
        use std::os::unix::process::CommandExt;
        let bin = which("chromedriver").expect(
            "chromedriver is not installed: apt-get install chromium chromium-driver \
             (scripts/test installs them)",
        );
        let port = free_port();
        let log_file = std::fs::File::create(log).expect("create chromedriver log");
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = plain_http();
        let status = format!("{}/status", driver.url);
        wait_until_ok("chromedriver to be ready", UI_TIMEOUT, || async {
            let body: Value = http
                .get(&status)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            match body.pointer("/value/ready") {
                Some(Value::Bool(true)) => Ok(()),
                _ => Err(format!("status: {body}")),
            }
        })
        .await;
        driver
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The group id is the child's pid (process_group(0)); this signals only what we started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session with a fresh profile in `profile`.
async fn browser(driver: &Chromedriver, profile: &Path) -> Client {
    let chromium = which("chromium").expect("chromium is not installed: apt-get install chromium");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--window-size=1280,1800",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("start a Chromium session through chromedriver")
}

/// Saves a PNG screenshot of the browser's window to `path` (a test artifact).
async fn save_screenshot(client: &Client, path: &Path) {
    let png = client.screenshot().await.expect("take a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    std::fs::write(path, &png).unwrap_or_else(|e| panic!("save {}: {e}", path.display()));
}

/// A reqwest client that does not follow redirects (to see the 303s and 403s themselves).
fn plain_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()
        .expect("build reqwest client")
}

/// Waits until `css` matches an element whose text contains `needle`; returns it.
async fn wait_text(client: &Client, css: &str, needle: &str) -> Element {
    let what = format!("{css:?} to show {needle:?}");
    wait_until_ok(&what, UI_TIMEOUT, || async {
        let found = match client.find(Locator::Css(css)).await {
            Ok(el) => el.text().await.map(|text| (el, text)),
            Err(e) => Err(e),
        };
        match found {
            Ok((el, text)) if text.contains(needle) => Ok(el),
            Ok((_, text)) => Err(format!("text: {text:?}")),
            Err(e) => Err(format!(
                "{e}; the page shows {}",
                page_summary(client).await
            )),
        }
    })
    .await
}

/// The current URL and the start of the page's text, for failure messages.
async fn page_summary(client: &Client) -> String {
    let url = client
        .current_url()
        .await
        .map_or_else(|e| e.to_string(), |u| u.to_string());
    let text = match client.find(Locator::Css("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(e) => e.to_string(),
    };
    let text: String = text.chars().take(400).collect();
    format!("{url}: {text:?}")
}

/// Waits until nothing matches `css`.
async fn wait_gone(client: &Client, css: &str) {
    wait_until_ok(&format!("{css:?} to disappear"), UI_TIMEOUT, || async {
        match client.find_all(Locator::Css(css)).await {
            Ok(found) if found.is_empty() => Ok(()),
            Ok(found) => Err(format!("{} still there", found.len())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

/// Types `value` into the field `css`.
async fn fill(client: &Client, css: &str, value: &str) {
    let field = client
        .wait()
        .at_most(UI_TIMEOUT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("find {css}: {e}"));
    field
        .clear()
        .await
        .unwrap_or_else(|e| panic!("clear {css}: {e}"));
    field
        .send_keys(value)
        .await
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
}

/// Clicks the element `css`.
async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("find {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// The `Set-Cookie` headers of a response.
fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

/// `name=value` of cookie `name` among `Set-Cookie` headers.
fn cookie_pair(set_cookies: &[String], name: &str) -> Option<String> {
    set_cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
}

/// The hidden `_csrf` value of a page.
fn csrf_in(page: &str) -> Option<String> {
    let start = page.find("name=\"_csrf\" value=\"")? + "name=\"_csrf\" value=\"".len();
    let len = page[start..].find('"')?;
    Some(page[start..start + len].to_string())
}

/// Posts a form to `url` as a browser session with `cookie` would.
async fn post_form(
    http: &reqwest::Client,
    url: &str,
    cookie: &str,
    body: &str,
) -> reqwest::Response {
    http.post(url)
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_manages_origins_and_routes_in_a_browser() {
    let cluster = Cluster::start(3).await;
    let root = cluster.root().to_path_buf();
    let (r1, r2, r3) = (
        cluster.replica(0).api_url(),
        cluster.replica(1).api_url(),
        cluster.replica(2).api_url(),
    );
    // An edge, so the route's DNS hint has an address to show.
    new_edge(&cluster, 0, "edge-tokyo").await;

    let driver = Chromedriver::start(&root.join("chromedriver.log")).await;
    let client = browser(&driver, &root.join("chromium-profile")).await;

    // Not signed in: the dashboard sends the browser to the sign-in page.
    client.goto(&format!("{r1}/")).await.expect("open the UI");
    wait_text(&client, "#login-form", "Admin token").await;
    // A wrong token is refused with a message.
    fill(
        &client,
        "#login-form input[name=token]",
        "kokoa.nothere.0000000000",
    )
    .await;
    click(&client, "#login-form button[type=submit]").await;
    wait_text(&client, "#flash", "Sign-in failed").await;
    save_screenshot(&client, &root.join("ui-login.png")).await;
    // The admin token signs in.
    fill(
        &client,
        "#login-form input[name=token]",
        cluster.admin_token(),
    )
    .await;
    click(&client, "#login-form button[type=submit]").await;
    wait_text(&client, "#cluster", "leader").await;
    wait_text(&client, "#edges", "edge-tokyo").await;
    wait_text(&client, "#edges", "203.0.113.7").await;

    // Add an origin: the page shows the agent's one-line install command, with a fresh token.
    fill(&client, "#origin-form input[name=name]", "home-lab").await;
    click(&client, "#origin-form button[type=submit]").await;
    let flash = wait_text(&client, "#flash", "Origin home-lab added").await;
    let flash = flash.text().await.expect("flash text");
    let command = format!("kokoa agent --control {r1} --token kokoa.");
    assert!(flash.contains(&command), "want {command:?} in {flash:?}");
    assert!(flash.contains("--data-dir /var/lib/kokoa-agent"), "{flash}");
    wait_text(&client, "#origins tr[data-name=\"home-lab\"]", "tunnel").await;
    save_screenshot(&client, &root.join("ui-origin-added.png")).await;

    // Add a route for it: the flash and the list show the A record to create by hand.
    fill(
        &client,
        "#route-form input[name=hostname]",
        "app.example.com",
    )
    .await;
    client
        .find(Locator::Css("#route-form select[name=origin_id]"))
        .await
        .expect("origin select")
        .select_by_label("home-lab")
        .await
        .expect("choose home-lab");
    fill(&client, "#route-form input[name=target]", "localhost:8080").await;
    click(&client, "#route-form button[type=submit]").await;
    wait_text(&client, "#flash", "Route app.example.com added").await;
    wait_text(&client, "#flash", "app.example.com A 203.0.113.7").await;
    let row = "#routes tr[data-name=\"app.example.com\"]";
    wait_text(&client, row, "app.example.com A 203.0.113.7").await;
    wait_text(&client, row, "home-lab").await;
    wait_text(&client, "#origins tr[data-name=\"home-lab\"]", "home-lab").await;

    let shot = root.join("ui-dashboard.png");
    save_screenshot(&client, &shot).await;
    std::fs::copy(&shot, SCREENSHOT_COPY).expect("copy the screenshot to /tmp");

    // The same cookie works on another replica (sessions are stateless).
    client
        .goto(&format!("{r3}/"))
        .await
        .expect("open replica 3");
    wait_text(&client, "header", "replica 3").await;
    wait_text(&client, row, "app.example.com").await;

    // What the browser cannot show, with plain HTTP and the browser's session cookie.
    let session = client
        .get_named_cookie("kokoa_session")
        .await
        .expect("the browser holds a session cookie");
    let cookie = format!("kokoa_session={}", session.value());
    assert_eq!(session.http_only(), Some(true), "{session:?}");
    let http = plain_http();
    let api = cluster.client(0);
    let routes = api.get("/api/v1/routes").await.expect("list routes");
    let route_id = items(&routes.json)
        .iter()
        .find(|r| r["hostname"] == "app.example.com")
        .and_then(|r| r["id"].as_str())
        .expect("the route is in the API's list")
        .to_string();
    let delete = format!("{r2}/ui/routes/{route_id}/delete");
    let resp = post_form(&http, &delete, &cookie, "").await;
    assert_eq!(resp.status().as_u16(), 403, "a POST without a CSRF token");
    let resp = post_form(&http, &delete, &cookie, "_csrf=forged").await;
    assert_eq!(
        resp.status().as_u16(),
        403,
        "a POST with a wrong CSRF token"
    );
    assert_eq!(
        route_hostnames(&api, false).await,
        vec!["app.example.com".to_string()],
        "refused forms change nothing"
    );
    // Without a session, a form POST goes to the sign-in page and changes nothing.
    let resp = post_form(&http, &delete, "kokoa_session=forged.value", "_csrf=x").await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()[LOCATION], "/ui/login");
    // A CSRF token from one replica's page is good on another replica.
    let page = http
        .get(format!("{r2}/"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("GET / on replica 2");
    assert_eq!(page.status().as_u16(), 200);
    let csrf = csrf_in(&page.text().await.expect("page body")).expect("a CSRF field");
    let resp = post_form(
        &http,
        &format!("{r3}/ui/dns"),
        &cookie,
        &format!("_csrf={csrf}&name=www&type=A&value=192.0.2.10&ttl="),
    )
    .await;
    assert_eq!(
        resp.status().as_u16(),
        303,
        "a form with the right CSRF token"
    );
    let records = api.get("/api/v1/dns/records").await.expect("list records");
    assert!(
        items(&records.json).iter().any(|r| r["name"] == "www"),
        "{}",
        records.json
    );

    // Delete the route, then the origin, in the browser.
    client
        .goto(&format!("{r1}/"))
        .await
        .expect("back to replica 1");
    wait_text(&client, "#dns", "192.0.2.10").await;
    click(&client, &format!("{row} button")).await;
    wait_text(&client, "#flash", "Route app.example.com deleted").await;
    wait_gone(&client, row).await;
    let origin_row = "#origins tr[data-name=\"home-lab\"]";
    click(&client, &format!("{origin_row} button")).await;
    wait_text(&client, "#flash", "Origin home-lab deleted").await;
    wait_gone(&client, origin_row).await;
    assert!(route_hostnames(&api, false).await.is_empty());
    let origins = api.get("/api/v1/origins").await.expect("list origins");
    assert!(items(&origins.json).is_empty(), "{}", origins.json);

    // Sign out: the dashboard asks for a token again.
    click(&client, "header button[type=submit]").await;
    wait_text(&client, "#flash", "Signed out").await;
    client.goto(&format!("{r1}/")).await.expect("open the UI");
    wait_text(&client, "#login-form", "Admin token").await;

    client.close().await.expect("end the browser session");
    drop(driver);
}

/// The dashboard of replica `i` as the cluster's admin sees it (signed in over plain HTTP).
pub(crate) async fn dashboard_page(cluster: &Cluster, i: usize) -> String {
    let http = plain_http();
    let url = cluster.replica(i).api_url();
    let resp = http
        .post(format!("{url}/ui/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={}", cluster.admin_token()))
        .send()
        .await
        .expect("POST /ui/login");
    assert_eq!(resp.status().as_u16(), 303, "sign in");
    let cookie = cookie_pair(&set_cookies(&resp), "kokoa_session").expect("a session cookie");
    let page = http
        .get(format!("{url}/"))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("GET /");
    assert_eq!(page.status().as_u16(), 200, "the dashboard");
    page.text().await.expect("the dashboard's body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_when_their_token_is_revoked() {
    let cluster = Cluster::start(3).await;
    let api = cluster.client(0);
    let made = api
        .post_json("/api/v1/tokens", &json!({ "role": "admin" }))
        .await
        .expect("create an admin token");
    assert_eq!(made.status.as_u16(), 201, "{}", made.json);
    let token = made.json["token"].as_str().expect("token").to_string();
    let token_id = made.id().expect("token id");
    let http = plain_http();
    let (r1, r2) = (cluster.replica(0).api_url(), cluster.replica(1).api_url());

    // Sign in over HTTP (as a TLS proxy would forward it: the cookie is then Secure).
    let resp = http
        .post(format!("{r1}/ui/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("x-forwarded-proto", "https")
        .body(format!("token={token}"))
        .send()
        .await
        .expect("POST /ui/login");
    assert_eq!(resp.status().as_u16(), 303);
    let cookies = set_cookies(&resp);
    let set = cookies
        .iter()
        .find(|c| c.starts_with("kokoa_session="))
        .expect("a session cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Secure",
        "Max-Age=43200",
    ] {
        assert!(set.contains(attribute), "{attribute} missing in {set}");
    }
    let cookie = cookie_pair(&cookies, "kokoa_session").expect("cookie value");

    // Over plain HTTP the cookie is not Secure (it would never be sent back).
    let resp = http
        .post(format!("{r1}/ui/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .expect("POST /ui/login");
    let plain = set_cookies(&resp);
    assert!(plain.iter().all(|c| !c.contains("Secure")), "{plain:?}");

    let dashboard = |url: String| {
        let http = http.clone();
        let cookie = cookie.clone();
        async move {
            http.get(url)
                .header(COOKIE, cookie)
                .send()
                .await
                .expect("GET /")
        }
    };
    assert_eq!(dashboard(format!("{r2}/")).await.status().as_u16(), 200);

    let revoked = api
        .delete(&format!("/api/v1/tokens/{token_id}"))
        .await
        .expect("revoke");
    assert!(revoked.is_success(), "{} {}", revoked.status, revoked.json);
    for url in [format!("{r1}/"), format!("{r2}/")] {
        let resp = dashboard(url.clone()).await;
        assert_eq!(
            resp.status().as_u16(),
            303,
            "GET {url} after the revocation"
        );
        assert_eq!(resp.headers()[LOCATION], "/ui/login");
    }
}
