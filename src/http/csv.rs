//! CSV presentation of statistics for spreadsheet programs: UTF-8 with a BOM, Chinese
//! headers, CRLF line ends, formula-like cells neutralised ([`write_csv_record`]). Replay
//! figures (回看人次, 回看分钟) follow the live ones, then the interaction counts (互动消息,
//! 提问, 已答提问, 点赞, 线上签到).

use crate::catalog::{
    InteractionCounts, RatingRow, RequestStatsRow, ServiceRequest, SessionStats, StatsRow,
    write_csv_record,
};

fn csv_table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    // The BOM makes spreadsheet programs read the file as UTF-8, so Chinese shows correctly.
    let mut out = String::from("\u{feff}");
    write_csv_record(&mut out, header);
    for row in rows {
        write_csv_record(&mut out, &row);
    }
    out
}

/// A statistics table as CSV (UTF-8 with BOM, Chinese headers, CRLF).
pub fn stats_csv(rows: &[StatsRow]) -> String {
    csv_table(
        &[
            "编号",
            "名称",
            "时段",
            "场次",
            "线上观看人次",
            "最高同时在线",
            "观看分钟",
            "现场人数",
            "总受众人次",
            "手机",
            "电脑",
            "电视",
            "其他终端",
            "回看人次",
            "回看分钟",
            "互动消息",
            "提问",
            "已答提问",
            "点赞",
            "线上签到",
        ],
        rows.iter().map(|r| {
            let mut row = vec![
                r.group_id.to_string(),
                r.group_name.clone(),
                r.period.clone(),
                r.sessions.to_string(),
                r.online_viewers.to_string(),
                r.peak_viewers.to_string(),
                r.viewer_minutes.to_string(),
                r.in_person.to_string(),
                r.total_audience.to_string(),
                r.terminals.mobile.to_string(),
                r.terminals.pc.to_string(),
                r.terminals.tv.to_string(),
                r.terminals.other.to_string(),
                r.replay_viewers.to_string(),
                r.replay_minutes.to_string(),
            ];
            row.extend(interaction_cells(&r.interaction));
            row
        }),
    )
}

/// The interaction columns (互动消息, 提问, 已答提问, 点赞, 线上签到).
fn interaction_cells(c: &InteractionCounts) -> [String; 5] {
    [
        c.messages.to_string(),
        c.questions.to_string(),
        c.questions_answered.to_string(),
        c.likes.to_string(),
        c.checkins.to_string(),
    ]
}

/// A session listing as CSV (UTF-8 with BOM).
pub fn sessions_csv(rows: &[SessionStats]) -> String {
    csv_table(
        &[
            "场次编号",
            "中心",
            "所",
            "站",
            "类型",
            "标题",
            "主讲人",
            "影片",
            "开始时间",
            "日期",
            "时长分钟",
            "最高同时在线",
            "线上观看人数",
            "观看分钟",
            "现场人数",
            "总受众人次",
            "回看人次",
            "回看分钟",
            "互动消息",
            "提问",
            "已答提问",
            "点赞",
            "线上签到",
        ],
        rows.iter().map(|r| {
            let mut row = vec![
                r.id.to_string(),
                r.center.clone(),
                r.institute.clone(),
                r.station.clone(),
                r.kind.clone(),
                r.title.clone(),
                r.speaker.clone(),
                r.film.clone().unwrap_or_default(),
                r.started_at.clone(),
                r.day.clone(),
                r.minutes.to_string(),
                r.peak_viewers.to_string(),
                r.online_viewers.to_string(),
                r.viewer_minutes.to_string(),
                r.in_person.to_string(),
                r.total_audience.to_string(),
                r.replay_viewers.to_string(),
                r.replay_minutes.to_string(),
            ];
            row.extend(interaction_cells(&r.interaction));
            row
        }),
    )
}

/// Ratings (评单) per group and period as CSV.
pub fn ratings_csv(rows: &[RatingRow]) -> String {
    csv_table(
        &["编号", "名称", "时段", "评价场次", "评价数", "平均分"],
        rows.iter().map(|r| {
            vec![
                r.group_id.to_string(),
                r.group.clone(),
                r.period.clone(),
                r.sessions.to_string(),
                r.ratings.to_string(),
                format!("{:.1}", r.average),
            ]
        }),
    )
}

/// Residents' requests as CSV: phones masked (a CSV travels further than the dashboard).
pub fn requests_csv(rows: &[ServiceRequest]) -> String {
    csv_table(
        &[
            "编号",
            "站点",
            "服务",
            "类型",
            "称呼",
            "期望时段",
            "电话",
            "状态",
            "拒绝原因",
            "节目",
            "提交时间",
        ],
        rows.iter().map(|r| {
            let q = &r.request;
            vec![
                q.id.to_string(),
                r.station.clone(),
                q.item.title.clone(),
                q.item.kind.as_str().to_string(),
                q.nickname.clone(),
                q.period.clone(),
                q.phone_masked.clone().unwrap_or_default(),
                q.status.as_str().to_string(),
                q.decline_reason.clone().unwrap_or_default(),
                q.planned_item_id.map(|i| i.to_string()).unwrap_or_default(),
                q.created_at.clone(),
            ]
        }),
    )
}

/// Request figures (点单统计) as CSV.
pub fn request_stats_csv(rows: &[RequestStatsRow]) -> String {
    csv_table(
        &["编号", "名称", "收到", "已完成", "已拒绝", "中位天数"],
        rows.iter().map(|r| {
            vec![
                r.id.to_string(),
                r.name.clone(),
                r.received.to_string(),
                r.fulfilled.to_string(),
                r.declined.to_string(),
                r.median_days.map(|d| format!("{d:.1}")).unwrap_or_default(),
            ]
        }),
    )
}
