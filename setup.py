from setuptools import find_packages, setup

setup(
    name="verl-ext-ssl-puzzles",
    version="0.1.0",
    packages=find_packages(include=["verl_ext", "verl_ext.*"]),
    python_requires=">=3.10,<3.13",
    install_requires=["numpy", "pillow", "pandas", "pyarrow"],
)
