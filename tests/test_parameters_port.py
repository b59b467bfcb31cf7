"""The ``parameters`` package's own tests of ParameterSet, run against gitstore's ParameterSet.

Ported from ``test/test_parameters.py`` of the ``parameters`` package 0.2.1 (PyPI sdist
``parameters-0.2.1.tar.gz``; the tests NeuroTools' ``parameters`` module shipped), issue 12.
The assertions are unchanged. What changed, and only that:

* ``ParameterSet`` is gitstore's; ``ParameterRange``, ``ParameterSpace`` and
  ``ParameterReference`` are still the ``parameters`` package's (gitstore keys them or refuses
  them, it does not reimplement sweeps).
* Files the tests write in the working directory go to a temporary directory (setUp/tearDown).
* ``yaml.load(text)`` (an error without a Loader since PyYAML 6) is ``yaml.safe_load(text)``.
* Tests of ``ParameterSpace``'s own methods, ``ParameterTable``, ``ParameterDist`` and of
  ``ParameterReference`` arithmetic are not ported: they test the parameters package's other
  classes. ``ParameterSpaceIterationTest.test_iter_inner`` is ported with
  ``gitstore.params.points(space)`` in place of ``space.iter_inner()``.
* ``ParameterSpaceDotAccess.test_invalid_access`` is a deliberate difference (gitstore's
  ``ps["bar.foo"] = 10.0`` creates ``bar``): it is kept as a strict xfail.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import types
import unittest

import pytest
from parameters import ParameterRange, ParameterReference, ParameterSpace

from gitstore.params import ParameterSet, points


class _InTempDir(unittest.TestCase):
    """Runs each test in a fresh temporary directory (the originals write to the cwd)."""

    def setUp(self) -> None:
        self._old_cwd = os.getcwd()
        self._tmp = tempfile.TemporaryDirectory()
        os.chdir(self._tmp.name)

    def tearDown(self) -> None:
        os.chdir(self._old_cwd)
        self._tmp.cleanup()


# --- test/test_parameters.py: ParameterSetCreateTest --------------------------------------------

class ParameterSetCreateTest(unittest.TestCase):

    def test_create_from_dict(self):
        ps = ParameterSet({'a': 1, 'b': 2}, label="PS1")
        ps2 = ParameterSet({'ps': ps, 'c': 19}, label="PS2")
        ps3 = ParameterSet({'hello': 'world', 'ps2': ps2, 'null': None,
                            'true': False, 'mylist': [1, 2, 3, 4],
                            'mydict': {'c': 3, 'd': 4}, 'yourlist': [1, 2, {'e': 5, 'f': 6}],
                            }, label="PS3")
        ps4 = ParameterSet(ps)
        ps5 = ParameterSet(ps, label="PS5")
        ps6 = ParameterSet(ps3)  # noqa: F841 (as in the original)
        assert isinstance(ps3, ParameterSet)
        assert isinstance(ps3.ps2, ParameterSet)
        assert isinstance(ps3['ps2'].ps, ParameterSet)
        assert isinstance(ps3.ps2.ps.a, int)
        assert isinstance(ps3.mydict, ParameterSet)
        assert ps3.ps2.label == "PS2"
        assert ps3.mydict.label == 'mydict'
        assert isinstance(ps4, ParameterSet)
        assert ps4.label == ps.label, "%s != %s" % (ps4.label, ps.label)
        assert ps5.label == "PS5"

    def test_create_from_string(self):
        ps1 = ParameterSet("{'a': 1, 'b':2}")
        ps2 = ParameterSet({'a': 1, 'b': 2})
        self.assertEqual(ps1, ps2)

    def test_create_from_flat_iterator(self):
        ps = ParameterSet({'a': 1, 'b': 2}, label="PS1")
        ps2 = ParameterSet({'ps': ps, 'c': 19}, label="PS2")
        ps3 = ParameterSet({'hello': 'world', 'ps2': ps2, 'null': None,
                            'true': False, 'mylist': [1, 2, 3, 4],
                            'mydict': {'c': 3, 'd': 4}, 'yourlist': [1, 2, {'e': 5, 'f': 6}],
                            }, label="PS3")
        ps4 = ParameterSet({})
        for x in ps3.flat():
            ps4.flat_add(x[0], x[1])
        self.assertEqual(ps4, ps3)

    def test_create_with_syntax_error(self):
        self.assertRaises(SyntaxError, ParameterSet, "{'a': 1, 'b':2")

    def test_create_with_NameError(self):
        self.assertRaises(NameError, ParameterSet, "{a: 1, b:2}")

    def test_create_with_invalid_initialiser(self):
        self.assertRaises(TypeError, ParameterSet, object)

    def test_create_yaml_url(self):
        import tempfile
        import yaml

        conf1_str = """
        # user info
        username: joe
        email:  joe@example.com

        # recipes
        recipes:
           all: /somewhere1/file1.xml
           specific: /somewhere2/file2.xml
        """
        ps = ParameterSet
        tf = tempfile.NamedTemporaryFile(suffix='.yaml', mode='w')
        tf.file.writelines(conf1_str)
        tf.file.flush()
        tf.file.seek(0)
        ps = ParameterSet("file://" + tf.name)
        tf.close()
        ps1 = ParameterSet(yaml.safe_load(conf1_str))  # yaml.load(conf1_str) in the original
        assert ps1 == ps

    def test_create_with_references(self):
        ps = ParameterSet({'hello': 'world',
                           'ps2': {
                                'ps': {'a': 1, 'b': 2},
                                'c': 19
                                },
                           'null': None,
                           'true': False,
                           'mylist': [1, 2, 3, 4],
                           'mydict': {'c': 3, 'd': 4},
                           'yourlist': [1, 2, {'e': 5, 'f': 6}],
                           'ref1': ParameterReference('null'),
                           'ref2': ParameterReference('ps2.ps.b'),
                           'nested_refs': {
                                'ref3': ParameterReference('mydict.d'),
                           }
                          })
        ps.replace_references()
        self.assertEqual(ps.ref1, None)
        self.assertEqual(ps.ref2, 2)
        self.assertEqual(ps.nested_refs.ref3, 4)


# --- test/test_parameters.py: ParameterSetSaveLoadTest ------------------------------------------

class ParameterSetSaveLoadTest(_InTempDir):

    def setUp(self):
        super().setUp()
        ps = ParameterSet({'a': 1, 'b': 2}, label="PS1")
        ps2 = ParameterSet({'ps': ps, 'c': 19}, label="PS2")
        self.ps = ParameterSet({'hello': 'world', 'ps2': ps2, 'null': None,
                                'true': False, 'mylist': [1, 2, 3, 4],
                                'mydict': {'c': 3, 'd': 4}, 'yourlist': [1, 2, {'e': 5, 'f': 6}],
                                }, label="PS3")

    def tearDown(self):
        if os.path.exists('test.param'):
            os.remove('test.param')
        super().tearDown()

    def test_save_and_load(self):
        my_url = "file://%s/test.param" % os.getcwd()
        self.ps.save(my_url)
        new_ps = ParameterSet(my_url)
        self.assertEqual(self.ps, new_ps)
        self.assertEqual(self.ps.ps2.ps.b, new_ps.ps2.ps.b)

    def test_pickle(self):
        pkl = pickle.dumps(self.ps)
        new_ps = pickle.loads(pkl)
        self.assertEqual(self.ps, new_ps)
        self.assertEqual(self.ps.ps2.ps.b, new_ps.ps2.ps.b)


# --- test/test_parameters.py: ParameterSetFlattenTest -------------------------------------------

class ParameterSetFlattenTest(unittest.TestCase):

    def setUp(self):
        ps = ParameterSet({'a': 1, 'b': 2}, label="PS1")
        ps2 = ParameterSet({'ps': ps, 'c': 19}, label="PS2")
        self.ps = ParameterSet({'hello': 'world', 'ps2': ps2, 'null': None,
                                'true': False, 'mylist': [1, 2, 3, 4],
                                'mydict': {'c': 3, 'd': 4},
                                'yourlist': [1, 2, {'e': 5, 'f': 6}],
                                }, label="PS3")

    def test_flatten(self):
        assert isinstance(self.ps.flatten(), dict)
        self.assertEqual(self.ps.flatten(),
                         {'null': None, 'mylist': [1, 2, 3, 4], 'ps2.ps.b': 2,
                          'mydict.c': 3, 'mydict.d': 4,
                          'yourlist': [1, 2, {'e': 5, 'f': 6}], 'ps2.c': 19,
                          'true': False, 'hello': 'world', 'ps2.ps.a': 1})

    def test_flat(self):
        self.assertEqual(types.GeneratorType, type(self.ps.flat()))
        D = {}
        for k, v in self.ps.flat():
            D[k] = v
        self.assertEqual(D, self.ps.flatten())


# --- test/test_parameters.py: ParameterSetMiscTest ----------------------------------------------

class ParameterSetMiscTest(unittest.TestCase):

    def setUp(self):
        ps = ParameterSet({'a': 1, 'b': 2}, label="PS1")
        ps2 = ParameterSet({'ps': ps, 'c': 19}, label="PS2")
        self.ps = ParameterSet({'hello': 'world', 'ps2': ps2, 'null': None,
                                'true': False, 'mylist': [1, 2, 3, 4],
                                'mydict': {'c': 3, 'd': 4}, 'yourlist': [1, 2, {'e': 5, 'f': 6}],
                                }, label="PS3")

    def test_as_dict(self):
        self.assertEqual(self.ps.as_dict(),
                         {'hello': 'world',
                          'ps2': {'ps': {'a': 1, 'b': 2}, 'c': 19},
                          'null': None,
                          'true': False,
                          'mylist': [1, 2, 3, 4],
                          'mydict': {'c': 3, 'd': 4},
                          'yourlist': [1, 2, {'e': 5, 'f': 6}],
                          })


# --- test/test_parameters.py: ParameterSetDiffTest ----------------------------------------------

class ParameterSetDiffTest(unittest.TestCase):

    def setUp(self):
        ps = ParameterSet({'a': 1, 'b': 2}, label="PS1")
        ps2 = ParameterSet({'ps': ps, 'c': 19}, label="PS2")
        self.ps = ParameterSet({'hello': 'world', 'ps2': ps2, 'null': None,
                                'true': False, 'mylist': [1, 2, 3, 4],
                                'mydict': {'c': 3, 'd': 4},
                                'yourlist': [1, 2, {'e': 5, 'f': 6}],
                                }, label="PS3")

    def test_diff_self_is_zero(self):
        self.assertEqual(self.ps - self.ps, ({}, {}))

    def test_diff_at_top_level(self):
        ps2 = ParameterSet(self.ps.as_dict())
        ps2.hello = 'universe'
        self.assertEqual(ps2 - self.ps, ({'hello': 'universe'}, {'hello': 'world'}))
        self.assertEqual(self.ps - ps2, ({'hello': 'world'}, {'hello': 'universe'}))

    def test_diff_as_bottom_level(self):
        ps2 = ParameterSet(self.ps.as_dict())
        ps2.ps2.ps.b = 3
        self.assertEqual(ps2 - self.ps, ({'ps2': {'ps': {'b': 3}}},
                                         {'ps2': {'ps': {'b': 2}}}))

    def test_diff_inside_list(self):
        ps2 = ParameterSet(self.ps.as_dict())
        ps2.yourlist = [100, 2, {'e': 55, 'f': 6}]
        self.assertEqual(ps2 - self.ps, ({'yourlist': [100, 2, {'e': 55, 'f': 6}]},
                                         {'yourlist': [1, 2, {'e': 5, 'f': 6}]}))


# --- test/test_parameters.py: ParameterSpaceDotAccess (on gitstore's ParameterSet) -------------

class ParameterSpaceDotAccess(unittest.TestCase):

    def setUp(self):
        ps7 = ParameterSet({})  # ParameterSpace({}) in the original
        ps7.name = ParameterSet({})
        ps7.x = ParameterRange([1, 2])
        self.yrange = [1.1, 2.2]
        ps7.name.y = ParameterRange(self.yrange)
        ps7.foo = ParameterSet({})

        self.ps7 = ps7

    def test_valid_access(self):
        ps7 = self.ps7
        self.assertEqual(ps7.name.y, ps7['name.y'])
        ps7['foo.bar'] = 10.0
        assert ps7['foo'].bar == ps7.foo.bar == ps7.foo['bar']

    @pytest.mark.xfail(strict=True, reason="deliberate difference: gitstore's ps['bar.foo'] = v "
                       "creates the set 'bar' (as flat_add does) instead of raising KeyError")
    def test_invalid_access(self):
        ps7 = self.ps7

        def f(k, v):
            ps7[k] = v
        self.assertRaises(KeyError, f, 'bar.foo', 10.0)


# --- test/test_parameters.py: ParameterSpaceIterationTest.test_iter_inner -----------------------

class ParameterSpaceIterationTest(unittest.TestCase):

    def setUp(self):
        ps7 = ParameterSpace({})
        ps7.name = ParameterSpace({})
        ps7.x = ParameterRange([1, 2])
        self.yrange = [1.1, 2.2]
        ps7.name.y = ParameterRange(self.yrange)
        ps7.foo = ParameterSet({})
        self.ps7 = ps7

    def test_iter_inner(self):
        ps7 = self.ps7
        assert [x.name.y for x in ps7.iter_range_key('name.y')] == self.yrange
        out = [(1, 1.1000000000000001), (1, 2.2000000000000002),
               (2, 1.1000000000000001), (2, 2.2000000000000002)]
        out1 = [(1, 1.1000000000000001), (2, 1.1000000000000001),
                (1, 2.2000000000000002), (2, 2.2000000000000002)]
        out2 = [(ps.x, ps.name.y) for ps in points(ps7)]  # ps7.iter_inner() in the original
        assert out2 in (out, out1)


# --- test/test_parameters.py: ParameterReferenceTest (the tests on a ParameterSet) -------------

class ParameterReferenceTest(unittest.TestCase):

    def test_replace_references_with_operations(self):
        ps = ParameterSet({
                              'p1' : 2,
                              'p2' : 4,
                              'p3' : ParameterReference('p1')+ParameterReference('p2')+1,
                              'p4' : ParameterReference('p3')+1,
                              'p5' : {
                                        "z" : ParameterReference('p4')+1
                                     },
                              'p6' : ParameterReference('p5')
                          })
        ps.replace_references()
        self.assertEqual(ps.p3, 7)
        self.assertEqual(ps.p4, 8)
        self.assertEqual(ps.p6.z, 9)
