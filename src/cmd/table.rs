//! Tables for people: one style for every table the command prints, and a
//! layout that never splits a word.
//!
//! On a terminal at least as wide as the table needs with each column as
//! wide as its longest word, the table is fitted to the terminal: cells
//! wrap between words only. Otherwise (a narrow terminal, one that reports
//! 0 columns as `docker exec -t` and some CI runners do, or output that is
//! not a terminal) it is printed at its natural width, with no limit; a
//! table whose rows read as well one below the other ([`print_stacking`],
//! `ls`'s) stacks them on a narrow terminal instead: each row a block of
//! `column  value` lines, so that nothing runs past the edge but a value
//! longer than the line.

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

/// As [`print`], but on a terminal too narrow for the table its rows are
/// [`stacked`].
pub fn print_stacking(table: Table) -> anyhow::Result<()> {
    print_line(render_stacking(table))
}

/// Lays `table` out for where it is going (see the module docs) and
/// renders it.
pub fn render(mut table: Table) -> String {
    fit(&mut table);
    table.to_string()
}

/// As [`render`], but on a terminal too narrow for the table its rows are
/// [`stacked`].
fn render_stacking(mut table: Table) -> String {
    if fit(&mut table) {
        stacked(&table)
    } else {
        table.to_string()
    }
}

/// Chooses the layout: fitted to the terminal when it is wide enough to
/// keep every word whole, otherwise no width limit. Returns whether the
/// terminal's width is known and too narrow for the table.
fn fit(table: &mut Table) -> bool {
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
            false
        }
        width => {
            table.set_content_arrangement(ContentArrangement::Disabled);
            width.is_some_and(|w| w > 0)
        }
    }
}

/// The rows of `table` one below the other, for a terminal too narrow for
/// it: each row a block of lines, the column's name, then its value (a
/// value of several lines goes on below itself), the names padded to the
/// longest; a blank line between blocks. Empty cells are left out, as an
/// empty cell of the table says nothing either.
fn stacked(table: &Table) -> String {
    let names: Vec<String> = table
        .header()
        .map(|h| h.cell_iter().map(Cell::content).collect())
        .unwrap_or_default();
    let pad = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let blocks: Vec<String> = table
        .row_iter()
        .map(|row| {
            let mut lines = Vec::new();
            for (name, cell) in names.iter().zip(row.cell_iter()) {
                for (n, line) in cell.content().lines().enumerate() {
                    let label = if n == 0 { name.as_str() } else { "" };
                    lines.push(format!("{label:pad$}  {line}").trim_end().to_string());
                }
            }
            lines.join("\n")
        })
        .collect();
    blocks.join("\n\n")
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

    /// The sample at its natural width, with no limit.
    fn natural() -> String {
        let mut t = sample();
        t.set_content_arrangement(ContentArrangement::Disabled);
        t.to_string()
    }

    #[test]
    fn a_terminal_too_narrow_for_whole_words_gets_the_natural_width() {
        for width in [0, 1, 20, 41] {
            let mut t = sample();
            t.set_width(width);
            assert_eq!(render(t), natural(), "width {width}");
        }
    }

    #[test]
    fn stacking_tables_keep_a_known_width_and_no_limit_without_one() {
        let natural = natural();
        for width in [0, 1, 20, 40, 41, 42, 45, 50, 60, 200] {
            let mut t = sample();
            t.set_width(width);
            let text = render_stacking(t);
            // Every word of every cell is there, whole (the stacked rows
            // name the columns once a row, the table once in all).
            let names = ["peer", "state", "holder", "heartbeat", "age"];
            let cells = |text: &str| -> Vec<String> {
                let mut w = words(text);
                w.retain(|w| !names.contains(&w.as_str()));
                w
            };
            assert_eq!(cells(&text), cells(&natural), "width {width}:\n{text}");
            let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
            match width {
                0 => assert_eq!(text, natural),
                1..42 => {
                    assert!(!text.contains('│'), "width {width}:\n{text}");
                    // The longest name, two spaces, the longest value.
                    assert!(widest <= 13 + 2 + 10, "width {width}:\n{text}");
                }
                _ => assert!(widest <= usize::from(width), "width {width}:\n{text}"),
            }
        }
    }

    #[test]
    fn stacked_rows_are_blocks_of_names_and_values() {
        let mut t = new(["segment", "owner", "guests"]);
        t.add_row(vec!["/dev/shm/a", "root:root 0600", "2 live\n1 dead"]);
        t.add_row(vec!["/dev/shm/b", "root:root 0600", ""]);
        t.set_width(30);
        assert_eq!(
            render_stacking(t),
            "segment  /dev/shm/a\n\
             owner    root:root 0600\n\
             guests   2 live\n\
             \x20        1 dead\n\
             \n\
             segment  /dev/shm/b\n\
             owner    root:root 0600"
        );
    }
}
