//! A browser's side of the server-rendered console, by hand: answers read without following
//! redirects, cookies carried in one `Cookie` header, forms posted with the CSRF token.

use iocloud_tests::{PASSWORD, TestApp};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

/// A browser's view of the answers: no redirects followed, cookies read by hand.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `Set-Cookie` lines of an answer.
pub fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// `name=value` of the cookie `name` among `lines`.
pub fn cookie(lines: &[String], name: &str) -> Option<String> {
    lines
        .iter()
        .find(|l| l.starts_with(&format!("{name}=")))
        .map(|l| l.split(';').next().unwrap().to_string())
}

/// The value of the form's hidden CSRF field in `html`.
pub fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

pub async fn sign_in(app: &TestApp, email: &str) -> String {
    let http = browser();
    let login = http.get(app.url("/app/login")).send().await.unwrap();
    let csrf_cookie = cookie(&set_cookies(&login), "csrf").unwrap();
    let csrf = csrf_in(&login.text().await.unwrap());
    let res = http
        .post(app.url("/app/login"))
        .header(COOKIE, &csrf_cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let lines = set_cookies(&res);
    format!(
        "{csrf_cookie}; {}; {}",
        cookie(&lines, "iocloud_access").unwrap(),
        cookie(&lines, "iocloud_refresh").unwrap()
    )
}

/// The CSRF token in a cookie jar made by [`sign_in`].
pub fn csrf_of(jar: &str) -> String {
    jar.split("; ")
        .find_map(|c| c.strip_prefix("csrf="))
        .unwrap()
        .to_string()
}

/// A page as the browser holding `jar` gets it.
pub async fn open(app: &TestApp, jar: &str, path: &str) -> reqwest::Response {
    browser()
        .get(app.url(path))
        .header(COOKIE, jar)
        .send()
        .await
        .unwrap()
}

/// A page's status and text, seen with `jar`.
pub async fn page(app: &TestApp, jar: &str, path: &str) -> (u16, String) {
    let res = open(app, jar, path).await;
    (res.status().as_u16(), res.text().await.unwrap())
}

/// A form posted as the browser holding `jar` posts it, fields as given (the CSRF token too).
pub async fn submit(
    app: &TestApp,
    jar: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    browser()
        .post(app.url(path))
        .header(COOKIE, jar)
        .form(form)
        .send()
        .await
        .unwrap()
}

/// A form posted as the browser holding `jar` posts it: (status, where it redirects, page).
pub async fn post_form(
    app: &TestApp,
    jar: &str,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let res = submit(app, jar, path, form).await;
    let status = res.status().as_u16();
    let to = res
        .headers()
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_string());
    (status, to, res.text().await.unwrap())
}
