use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use iocloud_control::usage::{Invoice, UsageRow};
use serde::Deserialize;
use utoipa::IntoParams;
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// `cluster` or `day` for usage; `device` or `day` for earnings.
    pub group_by: Option<String>,
    /// `YYYY-MM`; this month when absent.
    pub month: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MonthParams {
    pub month: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvoiceParams {
    /// `json` (default) or `html`, a printable page.
    pub format: Option<String>,
}

/// Usage of a month by cluster or by day.
#[utoipa::path(get, path = "/v1/usage", tag = "billing", params(SummaryParams), responses((status = 200, body = Vec<UsageRow>), (status = 422, body = Problem)))]
async fn usage(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<SummaryParams>,
) -> ApiResult<Json<Vec<UsageRow>>> {
    Ok(Json(
        s.control
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
    let csv = s.control.usage_csv(&actor, q.month.as_deref()).await?;
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
#[utoipa::path(get, path = "/v1/invoices/{month}", tag = "billing", params(InvoiceParams), responses((status = 200, body = Invoice), (status = 422, body = Problem)))]
async fn invoice(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiPath(month): ApiPath<String>,
    ApiQuery(q): ApiQuery<InvoiceParams>,
) -> ApiResult<Response> {
    let invoice = s.control.invoice(&actor, &month).await?;
    Ok(match q.format.as_deref() {
        None | Some("json") => Json(invoice).into_response(),
        Some("html") => Html(printable(&invoice)).into_response(),
        Some(_) => {
            return Err(iocloud_control::Error::validation("format", "use json or html").into());
        }
    })
}

/// What this organisation earned as a provider, by device or by day, after the platform fee.
#[utoipa::path(get, path = "/v1/earnings", tag = "billing", params(SummaryParams), responses((status = 200, body = Vec<UsageRow>), (status = 422, body = Problem)))]
async fn earnings(
    State(s): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(q): ApiQuery<SummaryParams>,
) -> ApiResult<Json<Vec<UsageRow>>> {
    Ok(Json(
        s.control
            .earnings(&actor, q.group_by.as_deref(), q.month.as_deref())
            .await?,
    ))
}

fn printable(invoice: &Invoice) -> String {
    let codes: Vec<&str> = invoice.lines.iter().map(|l| l.currency.code()).collect();
    let lines = invoice
        .lines
        .iter()
        .zip(&codes)
        .map(|(l, c)| {
            [
                l.cluster_id.as_str(),
                *c,
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
