//! The Pareto front: rows no other row beats on both axes at once.

/// Indices of the points not dominated by any other, where both coordinates
/// are to be minimised (negate one to maximise it), sorted by the first
/// coordinate. Points with a NaN coordinate are never on the front; equal
/// points are all kept.
pub fn front(points: &[(f64, f64)]) -> Vec<usize> {
    let valid = |p: &(f64, f64)| !(p.0.is_nan() || p.1.is_nan());
    let dominates =
        |a: &(f64, f64), b: &(f64, f64)| a.0 <= b.0 && a.1 <= b.1 && (a.0 < b.0 || a.1 < b.1);
    let mut out: Vec<usize> = (0..points.len())
        .filter(|&i| valid(&points[i]))
        .filter(|&i| !points.iter().any(|q| valid(q) && dominates(q, &points[i])))
        .collect();
    out.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_non_dominated_points() {
        // (latency, cost): 0 is fastest, 2 cheapest, 1 in between; 3 is beaten by 1.
        let pts = [
            (10.0, 5.0),
            (20.0, 3.0),
            (30.0, 1.0),
            (25.0, 4.0),
            (f64::NAN, 0.0),
        ];
        assert_eq!(front(&pts), vec![0, 1, 2]);
    }

    #[test]
    fn ties_stay_and_empty_is_empty() {
        assert_eq!(front(&[(1.0, 1.0), (1.0, 1.0), (1.0, 2.0)]), vec![0, 1]);
        assert!(front(&[]).is_empty());
    }
}
