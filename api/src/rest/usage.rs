use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use iocloud_control::usage::{Invoice, UsageRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiResult, Problem};
use crate::extract::{ApiPath, ApiQuery, Auth};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(usage))
        .routes(routes!(usage_export))
        .routes(routes!(invoice))
        .routes(routes!(earnings))
}

// Months below are declared as the server reads them (`month_bounds`): `YYYY-MM`, years 1970
// to 9999, the month as two digits.

/// How usage is grouped.
#[derive(ToSchema, Serialize)]
#[allow(dead_code)] // describes the document only: the server reads a string
#[serde(rename_all = "lowercase")]
pub enum UsageGrouping {
    Cluster,
    Day,
}

/// How earnings are grouped.
#[derive(ToSchema, Serialize)]
#[allow(dead_code)] // describes the document only: the server reads a string
#[serde(rename_all = "lowercase")]
pub enum EarningsGrouping {
    Device,
    Day,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// `cluster` (default) or `day`.
    #[param(value_type = Option<UsageGrouping>, inline)]
    pub group_by: Option<String>,
    /// `YYYY-MM`; this month when absent.
    #[param(
        pattern = r"^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$",
        example = "2026-11"
    )]
    pub month: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EarningsParams {
    /// `device` (default) or `day`.
    #[param(value_type = Option<EarningsGrouping>, inline)]
    pub group_by: Option<String>,
    /// `YYYY-MM`; this month when absent.
    #[param(
        pattern = r"^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$",
        example = "2026-11"
    )]
    pub month: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MonthParams {
    /// `YYYY-MM`; this month when absent.
    #[param(
        pattern = r"^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$",
        example = "2026-11"
    )]
    pub month: Option<String>,
}

/// The format of an invoice.
#[derive(ToSchema, Serialize)]
#[allow(dead_code)] // describes the document only: the server reads a string
#[serde(rename_all = "lowercase")]
pub enum InvoiceFormat {
    Json,
    Html,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvoiceParams {
    /// `json` (default) or `html`, a printable page.
    #[param(value_type = Option<InvoiceFormat>, inline)]
    pub format: Option<String>,
}

/// The invoice's month (the document's; the handler reads the path as a string).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct InvoiceMonth {
    /// `YYYY-MM`.
    #[param(
        pattern = r"^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$",
        example = "2026-11"
    )]
    pub month: String,
}

/// Usage of a month by cluster or by day.
#[utoipa::path(get, path = "/v1/usage", tag = "billing", params(UsageParams), responses((status = 200, body = Vec<UsageRow>), (status = 422, body = Problem)))]
async fn usage(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<UsageParams>,
) -> ApiResult<Json<Vec<UsageRow>>> {
    Ok(Json(
        s.control
            .billing
            .usage(&actor, q.group_by.as_deref(), q.month.as_deref())
            .await?,
    ))
}

/// Every usage line of a month, as CSV.
#[utoipa::path(get, path = "/v1/usage/export", tag = "billing", params(MonthParams), responses((status = 200, content_type = "text/csv", body = String)))]
async fn usage_export(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<MonthParams>,
) -> ApiResult<Response> {
    let csv = s
        .control
        .billing
        .usage_csv(&actor, q.month.as_deref())
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"usage.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}

/// The monthly invoice: a line per cluster and price. `?format=html` gives a printable page.
#[utoipa::path(get, path = "/v1/invoices/{month}", tag = "billing", params(InvoiceMonth, InvoiceParams),
    responses((status = 200, description = "The invoice; with `format=html`, a printable page", content((Invoice = "application/json"), (String = "text/html"))), (status = 422, body = Problem)))]
async fn invoice(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(month): ApiPath<String>,
    ApiQuery(q): ApiQuery<InvoiceParams>,
) -> ApiResult<Response> {
    let invoice = s.control.billing.invoice(&actor, &month).await?;
    json_or_page(q.format.as_deref(), invoice, |i| {
        printable(i, str::to_string)
    })
}

/// A document as JSON (the default) or, with `format=html`, as its printable page.
pub(crate) fn json_or_page<T: Serialize>(
    format: Option<&str>,
    document: T,
    page: impl FnOnce(&T) -> String,
) -> ApiResult<Response> {
    Ok(match format {
        None | Some("json") => Json(document).into_response(),
        Some("html") => Html(page(&document)).into_response(),
        Some(_) => {
            return Err(iocloud_control::Error::validation("format", "use json or html").into());
        }
    })
}

/// What this organisation earned as a provider, by device or by day, after the platform fee.
#[utoipa::path(get, path = "/v1/earnings", tag = "billing", params(EarningsParams), responses((status = 200, body = Vec<UsageRow>), (status = 422, body = Problem)))]
async fn earnings(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<EarningsParams>,
) -> ApiResult<Json<Vec<UsageRow>>> {
    Ok(Json(
        s.control
            .billing
            .earnings(&actor, q.group_by.as_deref(), q.month.as_deref())
            .await?,
    ))
}

/// The printable invoice, each line's cluster as `cluster` names it (its id, or the console's
/// name and id).
pub(crate) fn printable(invoice: &Invoice, cluster: impl Fn(&str) -> String) -> String {
    let clusters: Vec<String> = invoice
        .lines
        .iter()
        .map(|l| cluster(&l.cluster_id))
        .collect();
    let lines = invoice
        .lines
        .iter()
        .zip(&clusters)
        .map(|(l, c)| {
            [
                c.as_str(),
                l.currency.code(),
                l.gpu_hours.as_str(),
                l.rate.as_str(),
                l.amount.as_str(),
                l.unpaid.as_str(),
            ]
        })
        .collect();
    let totals = invoice
        .totals
        .iter()
        .map(|t| [t.currency.code(), t.amount.as_str(), t.unpaid.as_str()])
        .collect();
    iocloud_web::invoice::render_view(&iocloud_web::invoice::InvoiceView {
        organization: &invoice.organization,
        org_id: &invoice.org_id,
        month: &invoice.month,
        lines,
        totals,
    })
}
