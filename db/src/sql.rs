//! SQL text built at run time: numbered parameters for `IN (…)` lists and multi-row `VALUES`
//! (both engines take `$n`), and column lists qualified by a table's alias for joins.

/// `$1, $2, …, $n`.
pub fn params(n: usize) -> String {
    params_from(n, 1)
}

/// `n` parameters numbered from `$first`: an `IN (…)` list after other parameters.
pub fn params_from(n: usize, first: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `u.id, u.org_id` for `qualified("u", "id, org_id")`: a `COLUMNS` list for a joined read.
pub fn qualified(alias: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` parameters.
pub fn rows(rows: usize, columns: usize) -> String {
    rows_from(rows, columns, 1)
}

/// The same, numbering from `$first`.
pub fn rows_from(rows: usize, columns: usize, first: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (0..columns)
                .map(|c| format!("${}", first + r * columns + c))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_run_on_across_rows() {
        assert_eq!(params(3), "$1, $2, $3");
        assert_eq!(params_from(2, 3), "$3, $4");
        assert_eq!(rows(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(rows_from(1, 3, 5), "($5, $6, $7)");
    }

    #[test]
    fn columns_take_the_alias() {
        assert_eq!(qualified("u", "id, org_id"), "u.id, u.org_id");
    }
}
