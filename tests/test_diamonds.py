"""The shipped diamonds table and the ordinal task's splits: what is read,
the class order, the training-only price bins, and per-seed splits."""

import numpy as np
import pytest

from spectral_targets.bench import _diamonds as dia


@pytest.fixture(scope="module")
def table():
  return dia.load_table()


def test_the_table_is_ggplot2s(table):
  assert set(table) == {"carat", "cut", "color", "clarity", "depth", "table",
                        "price", "x", "y", "z"}
  assert all(len(c) == 53_940 for c in table.values())
  # First row of ggplot2's diamonds: 0.23 Ideal E SI2 61.5 55 326 3.95 3.98
  # 2.43.
  row = {k: v[0] for k, v in table.items()}
  assert row["carat"] == 0.23 and row["price"] == 326 and row["z"] == 2.43
  assert dia.CUTS[row["cut"]] == "Ideal"
  assert dia.COLOURS[row["color"]] == "E"
  assert dia.CLARITIES[row["clarity"]] == "SI2"
  assert table["price"].min() == 326 and table["price"].max() == 18_823
  with pytest.raises(ValueError):
    table["price"][0] = 1.0  # read-only: the cached table cannot drift


def test_colour_grades_run_from_j_to_d(table):
  # table(diamonds$color) in R: D 6775, E 9797, F 9542, G 11292, H 8304,
  # I 5422, J 2808; the grades are J = 0 < ... < D = 6.
  counts = dict(zip(dia.COLOURS, np.bincount(table["color"])))
  assert counts == {"D": 6775, "E": 9797, "F": 9542, "G": 11292, "H": 8304,
                    "I": 5422, "J": 2808}
  assert dia.COLOURS[0] == "J" and dia.COLOURS[-1] == "D"
  s = dia.diamonds_split(0, "colour", table=table)
  assert set(np.unique(s.y_train)) == set(range(7))
  # Better clarity and cut sit higher in their own orders too.
  assert dia.CLARITIES.index("IF") > dia.CLARITIES.index("I1")
  assert dia.CUTS.index("Ideal") > dia.CUTS.index("Fair")


def test_splits_partition_the_rows_and_differ_across_seeds():
  a, b = dia.split_rows(0), dia.split_rows(1)
  everything = np.concatenate(a)
  assert np.array_equal(np.sort(everything), np.arange(53_940))
  assert [len(p) for p in a] == [32_364, 8_091, 13_485]
  for part_a, part_b in zip(a, b):
    assert not np.array_equal(part_a, part_b)
  for again, first in zip(dia.split_rows(0), a):
    np.testing.assert_array_equal(again, first)
  # The first TRAIN_ROWS of the training part train; validation and test
  # do not move.
  sub = dia.split_rows(0, train_rows=10_000)
  assert len(sub[0]) == 10_000 and np.isin(sub[0], a[0]).all()
  for part, full in zip(sub[1:], a[1:]):
    np.testing.assert_array_equal(part, full)
  with pytest.raises(ValueError, match="train_rows must be in"):
    dia.split_rows(0, train_rows=40_000)


def test_price_bins_are_fitted_on_the_training_split_only(table):
  seed = 3
  s = dia.diamonds_split(seed, "price-decile", table=table)
  train, val, test = dia.split_rows(seed, train_rows=dia.TRAIN_ROWS)
  assert len(s.y_train) == dia.TRAIN_ROWS
  edges = dia.decile_edges(table["price"][train])
  np.testing.assert_array_equal(s.y_test,
                                dia.price_bins(table["price"][test], edges))
  freq = np.bincount(s.y_train, minlength=10) / len(s.y_train)
  np.testing.assert_allclose(freq, 0.1, atol=0.005)  # equal frequency
  # The edges are the training rows' deciles, not the whole part's.
  full = dia.split_rows(seed)[0]
  assert not np.array_equal(dia.decile_edges(table["price"][full]), edges)
  # Moving the held-out prices moves no edge and no training label.
  moved = dict(table)
  price = table["price"].copy()
  price[test] = price[test] * 3 + 1000
  price[val] = price[val][::-1]
  moved["price"] = price
  t = dia.diamonds_split(seed, "price-decile", table=moved)
  np.testing.assert_array_equal(t.y_train, s.y_train)
  np.testing.assert_array_equal(t.x_train, s.x_train)
  np.testing.assert_array_equal(t.x_test, s.x_test)
  assert not np.array_equal(t.y_test, s.y_test)  # the test prices did move
  # Fitting on all the rows would give other edges.
  assert not np.array_equal(dia.decile_edges(table["price"]), edges)


def test_each_target_leaves_its_own_column_out(table):
  rng = np.random.default_rng(0)
  shuffled = {k: rng.permutation(v) if k in ("color", "price") else v
              for k, v in table.items()}
  for target, column in (("colour", "color"), ("price-decile", "price")):
    other = dict(table, **{column: shuffled[column]})
    a = dia.diamonds_split(1, target, table=table)
    b = dia.diamonds_split(1, target, table=other)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.shape[1] == 9
  # ...and uses the other's: colour's inputs include price.
  a = dia.diamonds_split(1, "colour", table=table)
  b = dia.diamonds_split(1, "colour",
                         table=dict(table, price=shuffled["price"]))
  assert not np.array_equal(a.x_train, b.x_train)


def test_inputs_are_standardised_on_the_training_split(table):
  s = dia.diamonds_split(2, "colour", table=table)
  assert s.x_train.dtype == np.float32 and s.y_train.dtype == np.int32
  np.testing.assert_allclose(s.x_train.mean(0), 0, atol=1e-4)
  np.testing.assert_allclose(s.x_train.std(0), 1, atol=1e-4)
  assert len(s.y_train) == dia.TRAIN_ROWS
  whole = dia.diamonds_split(2, "colour", table=table, train_rows=None)
  assert len(whole.y_train) + len(whole.y_val) + len(whole.y_test) == 53_940


def test_bad_target():
  with pytest.raises(ValueError, match="target must be one of"):
    dia.diamonds_split(0, "cut")
