"""Loading interactions (recbole .inter, MovieLens u.data, CSV), demographics, and the
per-user split."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastgan.recsys import load_interactions, load_user_features, split_per_user
from recsys_data import clustered_interactions


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_recbole_inter_file(tmp_path):
    path = write(tmp_path, "x.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                      "10\t7\t3\t1\n2\t7\t5\t2\n10\t3\t1\t3\n10\t7\t4\t4\n")
    data = load_interactions(path)
    assert data.user_ids == ("2", "10") and data.item_ids == ("3", "7")  # numeric order
    m = data.matrix().toarray()
    # (10, 7) appears twice and counts once.
    np.testing.assert_array_equal(m, [[0, 1], [1, 1]])
    # Only (2,7)=5 and (10,7)=4 remain; item 3 has no positive left and is dropped.
    only_good = load_interactions(path, min_rating=4)
    assert only_good.item_ids == ("7",)
    np.testing.assert_array_equal(only_good.matrix().toarray(), [[1], [1]])


def test_movielens_u_data_and_csv_with_and_without_header(tmp_path):
    u_data = load_interactions(write(tmp_path, "u.data", "1\t5\t3\t881250949\n2\t5\t4\t881250950\n"))
    assert (u_data.n_users, u_data.n_items, len(u_data.users)) == (2, 1, 2)
    with_header = load_interactions(write(tmp_path, "a.csv", "user,item,rating\nalice,book,5\nbob,film,1\n"))
    assert with_header.user_ids == ("alice", "bob") and with_header.item_ids == ("book", "film")
    no_header = load_interactions(write(tmp_path, "b.csv", "alice,book\nbob,film\nalice,film\n"))
    np.testing.assert_array_equal(no_header.matrix().toarray(), [[1, 1], [0, 1]])


def test_bad_files_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="source: no such file"):
        load_interactions(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="holds no interactions"):
        load_interactions(write(tmp_path, "empty.csv", "user,item\n"))
    with pytest.raises(ValueError, match=r"bad.csv:2: rating 'great' is not a number"):
        load_interactions(write(tmp_path, "bad.csv", "user,item,rating\na,b,great\n"), min_rating=3)
    with pytest.raises(ValueError, match="expected user and item columns"):
        load_interactions(write(tmp_path, "one.csv", "a\n"))


def test_movielens_100k_from_the_recbole_package():
    # Read in place from the installed package (the Makefile installs recbole), never copied.
    data = load_interactions("ml-100k")
    assert (data.n_users, data.n_items, data.matrix().nnz) == (943, 1682, 100000)
    features = load_user_features("ml-100k", data.user_ids)
    # One age group, one gender, one occupation per user.
    assert features.shape[0] == 943 and (features.sum(1) == 3).all()


def test_user_features_from_u_user(tmp_path):
    path = write(tmp_path, "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n")
    features = load_user_features(path, ("2", "1", "3"))
    # Columns: 7 age groups, genders (F, M), occupations (other, technician).
    assert features.shape == (3, 7 + 2 + 2)
    assert features[0].nonzero()[0].tolist() == [5, 7, 9]  # 53 -> [50, 56), F, other
    assert features[1].nonzero()[0].tolist() == [1, 8, 10]  # 24 -> [18, 25), M, technician
    assert features[2].sum() == 0  # user 3 is not in the file


def test_split_per_user_is_disjoint_complete_and_reproducible():
    m = clustered_interactions(n_users=50, per_user=10)
    train, test = split_per_user(m, 0.2, seed=3)
    assert (train.multiply(test)).nnz == 0
    assert ((train + test) != m).nnz == 0
    np.testing.assert_array_equal(np.asarray(test.sum(1)).ravel(), 2)  # round(0.2 * 10) per user
    again, _ = split_per_user(m, 0.2, seed=3)
    other, _ = split_per_user(m, 0.2, seed=4)
    assert (again != train).nnz == 0 and (other != train).nnz > 0


def test_split_keeps_a_history_for_small_users():
    m = sp.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=np.float32))
    train, test = split_per_user(m, 0.5, seed=0)
    np.testing.assert_array_equal(np.asarray(test.sum(1)).ravel(), [0, 1, 2])  # 1 item: kept; 3 items: round(1.5)=2
    assert np.asarray(train.sum(1)).min() >= 1
    with pytest.raises(ValueError, match="fraction must be in"):
        split_per_user(m, 1.0)
    with pytest.raises(TypeError, match="matrix must be a scipy.sparse"):
        split_per_user(m.toarray())
