//! Tables for people: one style for every table the command prints, and a
//! layout that never splits a word.
//!
//! On a terminal at least as wide as the table needs with each column as
//! wide as its longest word, the table is fitted to the terminal: cells
//! wrap between words only. Otherwise (a narrow terminal, one that reports
//! 0 columns as `docker exec -t` and some CI runners do, or output that is
//! not a terminal) it is printed at its natural width, with no limit.

use comfy_table::{Cell, ColumnConstraint, ContentArrangement, Row, Table, Width, presets};

use super::text::print_line;

/// An empty table with `header`, in the command's style.
pub fn new<T: Into<Cell>>(header: impl IntoIterator<Item = T>) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED)
        .set_header(header.into_iter().map(Into::into).collect::<Vec<Cell>>());
    t
}

/// A table with `header` and `rows`, in the command's style.
pub fn of<T: Into<Cell>, R: Into<Row>>(
    header: impl IntoIterator<Item = T>,
    rows: impl IntoIterator<Item = R>,
) -> Table {
    let mut t = new(header);
    for row in rows {
        t.add_row(row);
    }
    t
}

/// Lays `table` out for where it is going (see the module docs), then
/// prints it.
pub fn print(table: Table) -> anyhow::Result<()> {
    print_line(render(table))
}

/// Lays `table` out for where it is going (see the module docs) and
/// renders it.
pub fn render(mut table: Table) -> String {
    fit(&mut table);
    table.to_string()
}

/// Chooses the layout: fitted to the terminal when it is wide enough to
/// keep every word whole, otherwise no width limit.
fn fit(table: &mut Table) {
    let lower: Vec<u16> = longest_words(table)
        .into_iter()
        .zip(table.column_iter())
        .map(|(word, column)| word.saturating_add(column.padding_width()))
        .collect();
    // Content and padding of each column, a border between columns and one
    // at each side.
    let needed: usize = lower.iter().map(|&w| usize::from(w)).sum::<usize>() + lower.len() + 1;
    match table.width() {
        Some(width) if usize::from(width) >= needed => {
            table.set_content_arrangement(ContentArrangement::Dynamic);
            for (column, &min) in table.column_iter_mut().zip(&lower) {
                column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(min)));
            }
        }
        _ => {
            table.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
}

/// The display width of the longest word (text between spaces, where a
/// cell may wrap) of each column, header included, measured the way the
/// table measures: as its content with every space a line break.
fn longest_words(table: &Table) -> Vec<u16> {
    let words_only = |row: &Row| -> Vec<String> {
        row.cell_iter()
            .map(|c| c.content().replace(' ', "\n"))
            .collect()
    };
    let mut scratch = Table::new();
    if let Some(header) = table.header() {
        scratch.set_header(words_only(header));
    }
    for row in table.row_iter() {
        scratch.add_row(words_only(row));
    }
    scratch.column_max_content_widths()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = new(["peer", "state", "holder", "heartbeat age"]);
        t.add_row(vec!["1", "attached", "scripted", ""]);
        t.add_row(vec!["2", "attached", "no process", "0.1s"]);
        t
    }

    /// Every word of every cell, in order.
    fn words(text: &str) -> Vec<String> {
        let mut words: Vec<String> = text
            .split([
                '│', '┆', '\n', ' ', '─', '┌', '┐', '└', '┘', '┬', '┴', '╞', '╡', '╪', '═',
            ])
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect();
        words.sort();
        words
    }

    #[test]
    fn longest_words_are_measured_per_column() {
        assert_eq!(longest_words(&sample()), [4, 8, 8, 9]);
    }

    #[test]
    fn no_width_or_a_narrow_one_means_no_limit_and_whole_words() {
        let natural = {
            let mut t = sample();
            t.set_content_arrangement(ContentArrangement::Disabled);
            t.to_string()
        };
        for width in [0, 1, 20, 40, 41, 45, 50, 60, 200] {
            let mut t = sample();
            t.set_width(width);
            fit(&mut t);
            let text = t.to_string();
            assert_eq!(words(&text), words(&natural), "width {width}:\n{text}");
            let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
            if width >= 42 {
                assert!(widest <= usize::from(width), "width {width}:\n{text}");
            } else {
                assert_eq!(text, natural, "width {width}");
            }
        }
    }
}
